"""The shared training layer: model parts by family, and the pipeline every trained method and RESA use."""
