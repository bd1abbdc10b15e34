"""Training recipe and shipped model of smartbin (workstation side; the edge never imports this package)."""
