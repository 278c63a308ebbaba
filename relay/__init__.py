"""igbridge relay: Instagram webhooks to Genesys Open Messaging and back."""
