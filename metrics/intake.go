package metrics

import "github.com/prometheus/client_golang/prometheus"

// IntakeOutcomes are the outcomes of statusbridge_intake_total, every one
// present from the start (at 0).
var IntakeOutcomes = []string{"accepted", "duplicate", "invalid", "unauthorized", "bad_request", "too_large", "store_error"}

func (m *Metrics) registerIntake() {
	m.intakes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "statusbridge_intake_total",
		Help: "Order intakes (POST intake.path and POST /admin/intake) by outcome."}, []string{"outcome"})
	for _, o := range IntakeOutcomes {
		m.intakes.WithLabelValues(o)
	}
	m.reg.MustRegister(m.intakes)
}

// Intake counts one order intake by outcome: accepted, duplicate, invalid
// (JSON without a usable orderId), unauthorized, bad_request (not JSON),
// too_large, store_error.
func (m *Metrics) Intake(outcome string) { m.intakes.WithLabelValues(outcome).Inc() }
