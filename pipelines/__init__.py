"""Generation methods, one module each, written like the paper's algorithm."""
