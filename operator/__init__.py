"""igbridge operator: provisions InstagramChannel resources (see issue 4)."""
