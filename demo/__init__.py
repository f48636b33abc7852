"""Demo catalog built from real photographs bundled with scikit-image (no network needed)."""
