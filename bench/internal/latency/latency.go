// Package latency summarises measured latencies for the bench commands.
package latency

import (
	"slices"
	"time"
)

// Ms returns the p-quantile (0 ≤ p ≤ 1, nearest rank) of ds in milliseconds,
// 0 for no samples. It sorts ds in place.
func Ms(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return float64(ds[min(int(float64(len(ds))*p), len(ds)-1)]) / 1e6
}
