// Package alert takes findings to people: an Alertmanager notifier (API v2,
// modelled on Prometheus's notifier), a console printer, the findings JSONL
// writer and the HTTP endpoints (/metrics, probes, /api/v1/findings,
// /api/v1/deploys). Everything shown to a person that came from an event is
// cleaned and bounded, and escaped where it is rendered.
package alert
