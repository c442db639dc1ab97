"""Architecture-axis mitigation methods (METHODS.md 3.3-3.4): recipes that change or retrain a part of the VLM."""
