"""The text family: corpora -> character language models scored in bits per character."""
