"""Training losses (VAE reconstruction, GAN, vocoder)."""
