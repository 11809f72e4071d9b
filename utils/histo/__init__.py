"""H&E histopathology: stain handling, nucleus segmentation, instances and morphometry."""
