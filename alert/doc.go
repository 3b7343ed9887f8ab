// Package alert takes findings to people, through one interface, Sink,
// that the runner which evaluates (pipeline or replay) feeds from its
// evaluation goroutine: the Alertmanager notifier (API v2, modelled on
// Prometheus's notifier) live and for replay, the console printer and the
// findings JSONL writer. Everything shown to a person that came from an
// event is cleaned and bounded (redact.Clean), and escaped where it is
// rendered. The HTTP API is package api's.
package alert
