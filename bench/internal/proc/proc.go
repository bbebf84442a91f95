// Package proc reads what the bench needs from Linux's /proc: every
// process's CPU time (to wait until the machine is quiet before a phase) and
// a process's disk writes (/proc/<pid>/io write_bytes).
//
// The parsing and the accounting work on an fs.FS, so tests hand them a fake
// /proc; the bench hands them os.DirFS("/proc").
package proc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"
)

// TicksPerSecond is USER_HZ, the unit of the times in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go runs on (sysconf(_SC_CLK_TCK) reports
// this constant; the kernel's own HZ does not change it).
const TicksPerSecond = 100

// Stat is what the accounting needs of one /proc/<pid>/stat.
type Stat struct {
	PID, PPID int
	Start     uint64 // starttime: ticks after boot (tells a reused pid apart)
	Ticks     uint64 // utime + stime: the process's own CPU, all its threads
	Reaped    uint64 // cutime + cstime: CPU of children it has waited for
}

// ParseStat parses one /proc/<pid>/stat line. The command name (field 2) is
// in parentheses and may itself hold spaces and parentheses, so the fields are
// counted from the last ')'.
func ParseStat(line string) (Stat, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 1 || end < open {
		return Stat{}, fmt.Errorf("proc stat %.40q: no (comm)", line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return Stat{}, fmt.Errorf("proc stat %.40q: pid: %w", line, err)
	}
	// After ')': state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17) … starttime(22).
	f := strings.Fields(line[end+1:])
	if len(f) < 20 {
		return Stat{}, fmt.Errorf("proc stat of pid %d: %d fields after the command, want ≥ 20", pid, len(f))
	}
	num := func(i int) (uint64, error) {
		// cutime and cstime are signed in the kernel's format; never negative in practice.
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("proc stat of pid %d: field %d %q is not a count", pid, i+3, f[i])
		}
		return uint64(v), nil
	}
	var v [6]uint64
	for k, i := range []int{1, 11, 12, 13, 14, 19} {
		if v[k], err = num(i); err != nil {
			return Stat{}, err
		}
	}
	return Stat{PID: pid, PPID: int(v[0]), Ticks: v[1] + v[2], Reaped: v[3] + v[4], Start: v[5]}, nil
}

// Snapshot is every process's Stat at one moment, by pid.
type Snapshot map[int]Stat

// Read reads /proc/<pid>/stat of every process in fsys (the root of a
// /proc). A process that exits while it is read is left out.
func Read(fsys fs.FS) (Snapshot, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	s := Snapshot{}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		raw, err := fs.ReadFile(fsys, e.Name()+"/stat")
		if err != nil {
			// Gone between the listing and the read (ENOENT, or ESRCH
			// from /proc), or not ours to read: skipped. Reading none at
			// all is an error below.
			continue
		}
		st, err := ParseStat(string(bytes.TrimSpace(raw)))
		if err != nil {
			return nil, err
		}
		s[st.PID] = st
	}
	if len(s) == 0 {
		return nil, errors.New("list processes: no readable /proc/<pid>/stat")
	}
	return s, nil
}

// tree adds roots and all their descendants in s to into.
func (s Snapshot) tree(roots []int, into map[int]bool) {
	children := map[int][]int{}
	for pid, st := range s {
		children[st.PPID] = append(children[st.PPID], pid)
	}
	seen := map[int]bool{} // this snapshot's walk; into may hold another's
	todo := append([]int(nil), roots...)
	for len(todo) > 0 {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[pid] {
			continue
		}
		seen[pid], into[pid] = true, true
		todo = append(todo, children[pid]...)
	}
}

// OtherTicks is the CPU (in ticks) that processes outside the trees rooted at
// roots used between snapshots a and b. The trees are taken from both
// snapshots, so a child started or ended in between is still the bench's own.
//
// A process alive in both counts its utime+stime delta; one that started in
// between (a new pid, or a reused one with another start time) counts all of
// its time. A process that ended in between is seen only through its parent's
// cutime+cstime delta, which holds the whole life of every child it reaped in
// the window (so a long-lived child that exits counts more than its share of
// the window: the wait errs towards waiting). A process whose parent does not
// reap it in the window is missed.
func OtherTicks(a, b Snapshot, roots []int) uint64 {
	own := map[int]bool{}
	a.tree(roots, own)
	b.tree(roots, own)
	return ticks(a, b, func(pid int) bool { return !own[pid] })
}

// TreeTicks is the CPU (in ticks) the trees rooted at roots used between
// snapshots a and b, counted as OtherTicks counts the others' (e.g. a
// PostgreSQL server's: the postmaster and its backends).
func TreeTicks(a, b Snapshot, roots []int) uint64 {
	own := map[int]bool{}
	a.tree(roots, own)
	b.tree(roots, own)
	return ticks(a, b, func(pid int) bool { return own[pid] })
}

// ticks adds up the CPU between a and b of the processes of b that count.
func ticks(a, b Snapshot, counts func(pid int) bool) uint64 {
	var total uint64
	for pid, nb := range b {
		if !counts(pid) {
			continue
		}
		na, ok := a[pid]
		if !ok || na.Start != nb.Start {
			total += nb.Ticks + nb.Reaped
			continue
		}
		if nb.Ticks > na.Ticks {
			total += nb.Ticks - na.Ticks
		}
		if nb.Reaped > na.Reaped {
			total += nb.Reaped - na.Reaped
		}
	}
	return total
}

// Waiter waits until processes other than the bench's use less than MaxCores
// for a whole Window, for at most Max.
type Waiter struct {
	MaxCores float64       // e.g. 0.2: a fifth of one core, all other processes together
	Window   time.Duration // e.g. 2 s
	Max      time.Duration // e.g. 60 s: then the phase runs anyway

	Sample func() (Snapshot, error) // Read(os.DirFS("/proc")) in the bench
	Roots  func() []int             // the bench's own process trees (itself, PostgreSQL…)
	Sleep  func(time.Duration)      // time.Sleep in the bench
	Now    func() time.Time         // time.Now in the bench
}

// Outcome is how a wait ended.
type Outcome struct {
	Quiet      bool          `json:"quiet"`           // false: Max passed and the phase ran anyway
	Waited     time.Duration `json:"-"`               // from the first sample to the last
	WaitedS    float64       `json:"waited_s"`        // Waited in seconds, for the JSON
	OtherCores float64       `json:"other_cpu_cores"` // other processes' CPU over the last window
	Windows    int           `json:"windows"`         // windows sampled
}

// Wait samples windows of w.Window until one is quiet or w.Max has passed. It
// takes at most w.Max/w.Window+1 windows whatever the clock says.
func (w Waiter) Wait() (Outcome, error) {
	if w.Window <= 0 || w.Max < 0 {
		return Outcome{}, fmt.Errorf("quiet wait: window %v and max %v", w.Window, w.Max)
	}
	start := w.Now()
	prev, err := w.Sample()
	if err != nil {
		return Outcome{}, fmt.Errorf("quiet wait: %w", err)
	}
	prevAt := w.Now()
	limit := int(w.Max/w.Window) + 1
	var out Outcome
	for out.Windows < limit {
		w.Sleep(w.Window)
		cur, err := w.Sample()
		if err != nil {
			return out, fmt.Errorf("quiet wait: %w", err)
		}
		now := w.Now()
		out.Windows++
		elapsed := now.Sub(prevAt)
		if elapsed <= 0 {
			elapsed = w.Window
		}
		out.OtherCores = float64(OtherTicks(prev, cur, w.Roots())) / TicksPerSecond / elapsed.Seconds()
		out.Waited = now.Sub(start)
		out.WaitedS = out.Waited.Seconds()
		if out.OtherCores < w.MaxCores {
			out.Quiet = true
			return out, nil
		}
		if out.Waited+w.Window > w.Max {
			break
		}
		prev, prevAt = cur, now
	}
	return out, nil
}

// IO is what /proc/<pid>/io says of a process's storage traffic.
type IO struct {
	ReadBytes, WriteBytes, CancelledWriteBytes uint64
}

// ParseIO parses the text of /proc/<pid>/io.
func ParseIO(raw []byte) (IO, error) {
	var io IO
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch name {
		case "read_bytes":
			dst = &io.ReadBytes
		case "write_bytes":
			dst = &io.WriteBytes
		case "cancelled_write_bytes":
			dst = &io.CancelledWriteBytes
		default:
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return IO{}, fmt.Errorf("proc io %s: %w", name, err)
		}
		*dst = v
		seen++
	}
	if seen < 3 {
		return IO{}, errors.New("proc io: read_bytes, write_bytes or cancelled_write_bytes missing (no task I/O accounting?)")
	}
	return io, nil
}

// ReadIO reads /proc/<pid>/io from fsys (the root of a /proc).
func ReadIO(fsys fs.FS, pid int) (IO, error) {
	raw, err := fs.ReadFile(fsys, strconv.Itoa(pid)+"/io")
	if err != nil {
		return IO{}, fmt.Errorf("read io of pid %d: %w", pid, err)
	}
	io, err := ParseIO(raw)
	if err != nil {
		return IO{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	return io, nil
}
