package main

import (
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

var scrapeClient = &http.Client{Timeout: 10 * time.Second}

// scrape reads a statusbridge's /metrics as name{labels} → value (empty when
// it does not answer).
func scrape(addr string) map[string]float64 {
	out := map[string]float64{}
	resp, err := scrapeClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// histQuantile estimates quantile q of what histogram name observed between
// two scrapes, interpolating linearly inside the bucket (as PromQL does).
func histQuantile(before, after map[string]float64, name string, q float64) float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	prefix := name + `_bucket{le="`
	for k, v := range after {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(k[len(prefix):], `"}`), 64)
		if err != nil || math.IsInf(le, 1) {
			// The +Inf bucket (ParseFloat reads "+Inf"): a quantile beyond
			// the last finite bound is that bound, as in PromQL.
			continue
		}
		bs = append(bs, bucket{le, v - before[k]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	total := after[name+"_count"] - before[name+"_count"]
	if total <= 0 || len(bs) == 0 {
		return 0
	}
	rank, lo, below := q*total, 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			return lo + (b.le-lo)*(rank-below)/max(b.n-below, 1)
		}
		lo, below = b.le, b.n
	}
	return bs[len(bs)-1].le
}
