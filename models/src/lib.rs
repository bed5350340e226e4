//! exactflow-models: flows, training and checkpoints (filled by the models issue).
