"""Lexiscope compute: pure stages (vocabulary, embeddings, geometry, SAE, projections) and the pipeline."""
