//! exactflow-layers: invertible layers with verified Jacobians (filled by the layers issue).
