"""H&E histopathology tools (stain, nuclei, patch features)."""
