"""The shipped models (installed as the package `lightfer_models`): one card per model
(NAME.card.json, NAME.card.md) and its files. Find and load them through
`lightfer_utils.runtime.shipped_models`, by name."""
