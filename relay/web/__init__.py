"""The relay's webhook routes: read the body, check the signature, store, answer."""
