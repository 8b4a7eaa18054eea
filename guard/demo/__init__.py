"""The demo world every new user starts from: the thulobazaar schema with incidents planted."""
