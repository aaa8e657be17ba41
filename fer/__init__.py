"""fer: cross-dataset facial expression recognition experiments.

Kept import-light on purpose: entrypoints import `fer.naming` before Hydra composes the
config, and every heavy import (torch, Lightning) happens only once a job really runs.
"""
