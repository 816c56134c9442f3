"""Where model code comes from: uploads (and later URLs and git), safely unpacked."""
