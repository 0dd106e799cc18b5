"""Reading, validating, normalising, sampling and augmenting image/label pairs."""
