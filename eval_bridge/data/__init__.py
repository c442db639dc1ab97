"""Readers that turn external benchmark data (MultiTrust) into `Sample` lists."""
