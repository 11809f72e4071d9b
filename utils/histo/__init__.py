"""H&E histopathology: stains, nuclei, instances, morphometry and patch features."""
