"""One module per report section: each turns the run into its part of the template context."""
