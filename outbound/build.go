package outbound

import (
	"strings"

	"github.com/statusbridge/statusbridge/bridge"
	"github.com/statusbridge/statusbridge/config"
	"github.com/statusbridge/statusbridge/mapping"
)

// Build returns a client for every configured and enabled target, keyed by
// SenderKey (the target name for status deliveries; target/kind for the
// order intake's ticket, upsert and fetch), and the worker policy from the
// config. Disabled targets get no
// client: their deliveries are recorded as skipped when created.
func Build(cfg *config.Config) (map[string]Sender, Policy) {
	pol := Policy{
		MaxAttempts: cfg.Delivery.MaxAttempts,
		Initial:     cfg.Delivery.Backoff.Initial.D(),
		Max:         cfg.Delivery.Backoff.Max.D(),
		Concurrency: cfg.Delivery.Concurrency,
		Targets:     map[string]TargetPolicy{},
	}
	senders := map[string]Sender{}
	secrets := cfg.Secrets()
	addKind := func(name string, kind bridge.DeliveryKind, l config.Limits, build func(conns int) Sender) {
		conns := l.Concurrency
		if conns == 0 {
			conns = cfg.Delivery.Concurrency
		}
		key := SenderKey(name, kind)
		senders[key] = build(conns)
		if r, ok := senders[key].(redactor); ok { // every client redacts every configured secret
			var headers []string
			if h, ok := strings.CutPrefix(name, mapping.HTTPTargetPrefix); ok {
				headers = cfg.SecretHeaders(h)
			}
			r.setRedaction(redaction{values: secrets, headers: headers})
		}
		pol.Targets[name] = TargetPolicy{
			Concurrency:     l.Concurrency,
			Rate:            l.Rate.PerSecond(),
			BreakerFailures: l.CircuitBreaker.Failures,
			BreakerCooldown: l.CircuitBreaker.Cooldown.D(),
		}
	}
	add := func(name string, l config.Limits, build func(conns int) Sender) {
		addKind(name, bridge.KindStatus, l, build)
	}
	t := cfg.Targets
	region := ""
	if t.OrderSystem != nil {
		region = t.OrderSystem.PhoneRegion
	}
	plan := Plan(cfg)
	if ds := t.Digishare; ds.Enabled() {
		addKind(bridge.TargetDigishare, bridge.KindTicket, ds.Limits, func(n int) Sender { return NewTicketSender(*ds, region, n) })
	}
	if es := t.ExpertSender; es.OrdersEnabled() {
		addKind(mapping.TargetExpertSender, bridge.KindOrder, es.Limits, func(n int) Sender {
			return NewUpsertSender(*es, cfg.Intake.Location(), region, n)
		})
	}
	if os := t.OrderSystem; os.Enabled() {
		addKind(mapping.TargetOrderSystem, bridge.KindFetch, os.Limits, func(n int) Sender { return NewFetchSender(*os, plan, n) })
	}
	if es := t.ExpertSender; es.Enabled() {
		add(mapping.TargetExpertSender, es.Limits, func(n int) Sender { return NewExpertSender(*es, n) })
	}
	if os := t.OrderSystem; os.Enabled() {
		add(mapping.TargetOrderSystem, os.Limits, func(n int) Sender { return NewOrderSystem(*os, n) })
		add(mapping.TargetWhatsAppOptIn, os.Limits, func(n int) Sender { return NewWhatsAppOptIn(*os, n) })
	}
	if ev := t.Everlytic; ev.Enabled() {
		add(mapping.TargetEverlytic, ev.Limits, func(n int) Sender { return NewEverlytic(*ev, n) })
	}
	for name, h := range t.HTTP {
		if h.Enabled() {
			add(mapping.HTTPTargetPrefix+name, h.Limits, func(n int) Sender { return NewHTTPTarget(*h, n) })
		}
	}
	return senders, pol
}
