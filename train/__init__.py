"""dSFT and dDPO training stages on TRL."""
