"""Reading, tokenizing, storing and batching parallel text."""
