package bridge

import "time"

// Counters are kept by the store in the same transactions that change the
// states they count, so an overview reads them without scanning events or
// deliveries.
type Counters struct {
	// LastHour and LastDay count the events received in that window, by
	// their state now. The windows are made of 5-minute buckets: "last hour"
	// is the current bucket and the 11 before it (55 to 60 minutes).
	LastHour map[EventState]int `json:"last_hour"`
	LastDay  map[EventState]int `json:"last_day"`
	// Targets holds every target that ever had a delivery.
	Targets map[string]TargetCounters `json:"targets"`
	// Unmapped counts the events held as unmapped, by status id.
	Unmapped map[string]int `json:"unmapped"`
	// StatusIDs counts the stored events by the status id of their last
	// decision (events without one are not counted).
	StatusIDs map[string]int `json:"status_ids"`
}

// TargetCounters are one target's counted deliveries.
type TargetCounters struct {
	// States counts the target's stored deliveries by state.
	States map[DeliveryState]int `json:"states"`
	// OldestPending is when the oldest unfinished delivery was created (zero
	// when none is pending).
	OldestPending time.Time `json:"oldest_pending,omitzero"`
}

// TargetHealth is what the sender knows of a target right now.
type TargetHealth struct {
	// Breaker is "closed", "open" (paused until OpenUntil) or "half_open"
	// (one probe may go through).
	Breaker   string    `json:"breaker"`
	Failures  int       `json:"failures"`
	OpenUntil time.Time `json:"open_until,omitzero"`
}

// JobKind names what a job does.
type JobKind string

// JobRetry retries every dead delivery that matches the job's filter.
const JobRetry JobKind = "retry"

// JobState is where a job is in its life.
type JobState string

// Job states: queued (created, not started), running (started; after a
// restart it continues from its cursor), done, failed (stopped by an error
// it cannot get past).
const (
	JobQueued  JobState = "queued"
	JobRunning JobState = "running"
	JobDone    JobState = "done"
	JobFailed  JobState = "failed"
)

// Finished reports whether the job will do nothing more.
func (s JobState) Finished() bool { return s == JobDone || s == JobFailed }

// JobFilter selects the deliveries a retry job works through.
type JobFilter struct {
	State  string `json:"state,omitempty"` // only "dead" is retried; empty means dead
	Target string `json:"target,omitempty"`
}

// Reasons a job leaves a delivery out.
const (
	// SkipNewerExists: a newer delivery for the same order and target exists,
	// and retrying this one would send an older status over it (the 409 rule).
	SkipNewerExists = "newer_exists"
	// SkipOutcomeUnknown: the last attempt got no HTTP answer (a timeout or a
	// dropped connection), so the target may have applied it; left out unless
	// the job includes unknown outcomes.
	SkipOutcomeUnknown = "outcome_unknown"
	// SkipNotDead: the delivery is no longer dead.
	SkipNotDead = "not_dead"
	// SkipCreatedAfter: the delivery was created after the job.
	SkipCreatedAfter = "created_after_job"
)

// Job is a long operation the store records, so it survives a restart.
type Job struct {
	ID             string    `json:"id"`
	Kind           JobKind   `json:"kind"`
	Filter         JobFilter `json:"filter"`
	IncludeUnknown bool      `json:"include_unknown"`
	State          JobState  `json:"state"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	FinishedAt     time.Time `json:"finished_at,omitzero"`
	// From is the address that asked for the job.
	From string `json:"from,omitempty"`
	// Total is how many deliveries matched when the job was created.
	Total int `json:"total"`
	// Done counts deliveries queued again; Skipped counts the ones left out,
	// by reason; Failed the ones an error stopped.
	Done    int            `json:"done"`
	Skipped map[string]int `json:"skipped"`
	Failed  int            `json:"failed"`
	// Cursor is the last delivery examined: a restarted job continues after it.
	Cursor string `json:"cursor,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Processed counts the deliveries the job has examined.
func (j *Job) Processed() int {
	n := j.Done + j.Failed
	for _, v := range j.Skipped {
		n += v
	}
	return n
}

// Action is a state-changing operator action, recorded by the admin service.
type Action struct {
	ID   string    `json:"id"`
	At   time.Time `json:"at"`
	Kind string    `json:"kind"` // retry, replay, reload, job
	What string    `json:"what"` // a one-line description
	From string    `json:"from"` // the client address
	// Result says how it ended ("ok", or what went wrong).
	Result string `json:"result"`
}
