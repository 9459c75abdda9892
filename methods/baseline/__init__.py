"""The platform's reference baseline: FLAME-face Gaussians with learned colour only."""
