package outbound

import (
	"context"
	"errors"
)

// Leader is the deployment-wide sender role: at most one replica holds it.
type Leader interface {
	// Acquire blocks until this process holds the role or ctx ends; lost is
	// closed when it no longer does, and release gives it up.
	Acquire(ctx context.Context) (lost <-chan struct{}, release func(), err error)
}

// RunElected runs the worker only while this replica is the sender: it
// waits for the role, runs the worker (after takeover, called first, has
// released what the previous sender held), stops sending at once when the
// role is lost, and waits again — until ctx ends, when it shuts the worker
// down gracefully. onSender is told each change.
func (w *Worker) RunElected(ctx context.Context, l Leader, takeover func(context.Context) error, onSender func(bool)) error {
	for {
		lost, release, err := l.Acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if takeover != nil {
			if err := takeover(ctx); err != nil {
				w.log.Error("sender takeover failed; giving the role up", "err", err)
				release()
				continue
			}
		}
		onSender(true)
		w.log.Info("this replica is the sender now")
		runCtx, cancel := context.WithCancelCause(ctx)
		stopped := make(chan struct{})
		go func() {
			select {
			case <-lost:
				cancel(ErrNotSender)
			case <-stopped:
			}
		}()
		err = w.Run(runCtx)
		close(stopped)
		onSender(false)
		cancel(nil)
		release()
		if err != nil && !errors.Is(err, context.Canceled) {
			w.log.Error("delivery worker stopped", "err", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		w.log.Warn("this replica is no longer the sender")
	}
}
