"""Run the whole platform as local processes: the run command, the end-to-end tests and the benchmark."""
