"""Shared infrastructure that every layer may use: device and precision, atomic files,
checkpoint I/O, the run log and its optional trackers, seeding and the name registry. Nothing here imports a
model, data set, method or the engine."""
