"""The data axis: users' safety data in public formats (`loaders`) as neutral `SafetyRecord`s, and data methods."""
