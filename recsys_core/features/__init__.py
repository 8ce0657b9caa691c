"""Feature schema, vocabularies fit on the training split, and the encoders that use them."""
