"""The deletion pipeline's library side: workspace lock, data versioning of a forget set,
erasure of forgotten data from every copy, and its verification."""
