package proc

import (
	"fmt"
	"testing"
	"testing/fstest"
	"time"
)

// stat renders a /proc/<pid>/stat line with the fields the accounting reads;
// the rest are plausible filler.
func stat(pid int, comm string, ppid int, utime, stime, cutime, cstime, start uint64) string {
	return fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 100 0 0 0 %d %d %d %d 20 0 1 0 %d 1000000 200 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0",
		pid, comm, ppid, pid, pid, utime, stime, cutime, cstime, start)
}

func TestParseStat(t *testing.T) {
	st, err := ParseStat(stat(4242, "a (weird) name)", 7, 150, 50, 30, 12, 987654))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{PID: 4242, PPID: 7, Ticks: 200, Reaped: 42, Start: 987654}
	if st != want {
		t.Errorf("got %+v, want %+v", st, want)
	}
	for _, bad := range []string{"", "12 (x) S 1 2 3", "x (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", stat(5, "x", 1, 1, 1, 1, 1, 1)[:20]} {
		if _, err := ParseStat(bad); err == nil {
			t.Errorf("ParseStat(%q): no error", bad)
		}
	}
}

// fakeProc is a /proc holding the given stat lines, plus entries that are not
// processes.
func fakeProc(lines ...string) fstest.MapFS {
	fsys := fstest.MapFS{
		"self/stat":  {Data: []byte("ignored: not numeric")},
		"meminfo":    {Data: []byte("MemTotal: 1 kB\n")},
		"sys/kernel": {Data: []byte("x")},
	}
	for _, l := range lines {
		var pid int
		fmt.Sscanf(l, "%d", &pid)
		fsys[fmt.Sprintf("%d/stat", pid)] = &fstest.MapFile{Data: []byte(l + "\n")}
	}
	return fsys
}

func TestOtherTicksOverFakeProc(t *testing.T) {
	const bench = 100
	before := fakeProc(
		stat(1, "init", 0, 10, 10, 500, 500, 1),
		stat(bench, "bench", 50, 1000, 200, 0, 0, 900),
		stat(50, "go run", 1, 40, 5, 0, 0, 800),
		stat(101, "statusbridge", bench, 300, 100, 0, 0, 950), // the bench's server
		stat(102, "worker", 101, 10, 0, 0, 0, 960),            // its child
		stat(200, "compile", 1, 1000, 100, 0, 0, 500),         // another engineer, busy
		stat(300, "old", 1, 5000, 0, 0, 0, 100),               // its pid is reused below
		stat(400, "shortlived", 1, 70, 0, 0, 0, 990),          // exits; init reaps it
		stat(500, "idle", 1, 3, 3, 0, 0, 10),
	)
	after := fakeProc(
		stat(1, "init", 0, 10, 10, 570, 500, 1), // reaped 400: +70
		stat(bench, "bench", 50, 1900, 400, 30, 10, 900),
		stat(50, "go run", 1, 40, 6, 0, 0, 800), // +1
		stat(101, "statusbridge", bench, 700, 200, 0, 0, 950),
		stat(103, "wrk", bench, 400, 50, 0, 0, 1000),  // new, but the bench's own
		stat(104, "lua", 103, 9, 0, 0, 0, 1001),       // new grandchild of the bench
		stat(200, "compile", 1, 1030, 105, 0, 0, 500), // +35
		stat(300, "new", 1, 4, 2, 0, 0, 1005),         // same pid, new process: all 6
		stat(500, "idle", 1, 3, 3, 0, 0, 10),          // +0
		stat(600, "started", 1, 8, 0, 0, 0, 1003),     // new: all 8
	)
	a, err := Read(before)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Read(after)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 9 || len(b) != 10 {
		t.Fatalf("read %d and %d processes, want 9 and 10 (non-numeric entries skipped)", len(a), len(b))
	}
	if got, want := OtherTicks(a, b, []int{bench}), uint64(70+1+35+6+8); got != want {
		t.Errorf("other ticks = %d, want %d", got, want)
	}
	// With PostgreSQL (here pid 200) counted as the bench's own.
	if got, want := OtherTicks(a, b, []int{bench, 200}), uint64(70+1+6+8); got != want {
		t.Errorf("other ticks with 200 excluded = %d, want %d", got, want)
	}
	// Nothing excluded: the bench's tree counts too.
	own := uint64(1100+40) + 500 + 450 + 9 // bench (own + reaped), its server (102 is gone), wrk, lua
	if got, want := OtherTicks(a, b, nil), uint64(70+1+35+6+8)+own; got != want {
		t.Errorf("other ticks with nothing excluded = %d, want %d", got, want)
	}
	// The bench's own tree, and one process's (PostgreSQL's, say).
	if got := TreeTicks(a, b, []int{bench}); got != own {
		t.Errorf("tree ticks of the bench = %d, want %d", got, own)
	}
	if got := TreeTicks(a, b, []int{200}); got != 35 {
		t.Errorf("tree ticks of 200 = %d, want 35", got)
	}
}

func TestReadEmpty(t *testing.T) {
	if _, err := Read(fstest.MapFS{"meminfo": {Data: []byte("x")}}); err == nil {
		t.Error("a /proc without processes: no error")
	}
	if _, err := Read(fakeProc("1 (x) S")); err == nil {
		t.Error("an unparsable stat: no error")
	}
}

// fakeMachine is a clock and a /proc whose other processes use busy[i]
// cores during window i (the last value repeats).
type fakeMachine struct {
	now    time.Time
	ticks  uint64
	busy   []float64
	window int
	slept  []time.Duration
}

func (m *fakeMachine) waiter(maxWait time.Duration) Waiter {
	return Waiter{
		MaxCores: 0.2, Window: 2 * time.Second, Max: maxWait,
		Sample: func() (Snapshot, error) {
			return Snapshot{
				1:   {PID: 1, Ticks: m.ticks, Start: 1},
				100: {PID: 100, PPID: 1, Ticks: 1000 * m.ticks, Start: 2}, // the bench: always busy, excluded
			}, nil
		},
		Roots: func() []int { return []int{100} },
		Sleep: func(d time.Duration) {
			m.slept = append(m.slept, d)
			b := m.busy[min(m.window, len(m.busy)-1)]
			m.window++
			m.ticks += uint64(b * d.Seconds() * TicksPerSecond)
			m.now = m.now.Add(d)
		},
		Now: func() time.Time { return m.now },
	}
}

func TestWaitUntilQuiet(t *testing.T) {
	m := &fakeMachine{now: time.Unix(1e9, 0), busy: []float64{1.5, 0.5, 0.1, 0}}
	out, err := m.waiter(60 * time.Second).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !out.Quiet || out.Windows != 3 || out.Waited != 6*time.Second {
		t.Errorf("got %+v, want quiet after 3 windows, 6 s", out)
	}
	if out.OtherCores < 0.09 || out.OtherCores > 0.11 {
		t.Errorf("other cores in the quiet window = %v, want 0.1", out.OtherCores)
	}
}

func TestWaitGivesUp(t *testing.T) {
	m := &fakeMachine{now: time.Unix(1e9, 0), busy: []float64{0.25}} // just over 0.2, forever
	out, err := m.waiter(60 * time.Second).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if out.Quiet {
		t.Fatalf("quiet at %v cores, want not quiet", out.OtherCores)
	}
	if out.Waited > 60*time.Second || out.Waited < 58*time.Second || out.Windows != 30 {
		t.Errorf("gave up after %v and %d windows, want 58–60 s and 30 windows", out.Waited, out.Windows)
	}
	// A clock that never moves cannot make it wait forever.
	m = &fakeMachine{now: time.Unix(1e9, 0), busy: []float64{2}}
	w := m.waiter(10 * time.Second)
	w.Now = func() time.Time { return time.Unix(1e9, 0) }
	out, err = w.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if out.Quiet || out.Windows != 6 {
		t.Errorf("frozen clock: %+v, want not quiet after 6 windows", out)
	}
}

func TestParseIO(t *testing.T) {
	raw := []byte("rchar: 6976\nwchar: 120\nsyscr: 10\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 1232896\ncancelled_write_bytes: 8192\n")
	got, err := ParseIO(raw)
	if err != nil {
		t.Fatal(err)
	}
	if want := (IO{ReadBytes: 4096, WriteBytes: 1232896, CancelledWriteBytes: 8192}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := ParseIO([]byte("rchar: 1\nwchar: 2\n")); err == nil {
		t.Error("no write_bytes: no error")
	}
	if _, err := ParseIO([]byte("read_bytes: 1\nwrite_bytes: x\ncancelled_write_bytes: 0\n")); err == nil {
		t.Error("unparsable write_bytes: no error")
	}
	fsys := fstest.MapFS{"7/io": {Data: raw}}
	if io, err := ReadIO(fsys, 7); err != nil || io.WriteBytes != 1232896 {
		t.Errorf("ReadIO = %+v, %v", io, err)
	}
	if _, err := ReadIO(fsys, 8); err == nil {
		t.Error("ReadIO of a missing pid: no error")
	}
}
