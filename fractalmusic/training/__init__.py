"""The trainer: one loop for every generator. It never imports a concrete representation or generator."""
