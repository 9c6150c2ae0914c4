// Package sched is the daemon's coding scheduler: every block decode for a
// read, every encode for a flush and every background re-code runs on its
// pool of workers, highest priority first.
//
// Priorities, highest first: Read (a read(2) waits for the block),
// ReadAhead (blocks a sequential reader will want next), Flush (dirty
// blocks on their way to the store) and Background (recompression). A free
// worker always takes the oldest job of the highest priority that waits;
// Background jobs run only when nothing else waits, and at most
// Options.Background of them at once, so a background job never holds every
// worker. A running job is not preempted.
//
// Back-pressure: the Flush and Background queues are bounded; Submit waits
// while the queue of its priority is full. Read and ReadAhead queues are
// not bounded (their callers bound them: a reader waits for its block, and
// read-ahead has a window).
//
// Batching: jobs carry a key (for example the codec that decodes them). A
// backend that codes several blocks at once (a GPU) registers a Batcher for
// its key; a worker then hands it up to Batcher.MaxBatch queued jobs of that
// key and priority in one call. Jobs of keys without a Batcher run one by
// one through their own function.
package sched

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
)

// Priority orders jobs; lower values run first.
type Priority int

// The priorities, highest first.
const (
	Read Priority = iota
	ReadAhead
	Flush
	Background
	// NumPriorities is the number of priorities.
	NumPriorities
)

// String names the priority (as metrics label it).
func (p Priority) String() string {
	switch p {
	case Read:
		return "read"
	case ReadAhead:
		return "readahead"
	case Flush:
		return "flush"
	case Background:
		return "background"
	}
	return fmt.Sprintf("priority(%d)", int(p))
}

// ErrClosed is returned for jobs submitted to, or still queued in, a closed
// scheduler.
var ErrClosed = errors.New("coding scheduler is closed (the filesystem is shutting down)")

// Batcher runs several jobs of one key in one call (a batch backend such as
// a GPU). It works on the jobs' Payloads (whose type the submitters of that
// key and the Batcher agree on; it writes its results into them) and returns
// one error per job, in order (nil: done). The jobs' Run functions are not
// called.
type Batcher interface {
	MaxBatch() int
	RunBatch(ctx context.Context, jobs []*Job) []error
}

// Options configures New.
type Options struct {
	// Workers is the number of jobs run at once (0: one per core).
	Workers int
	// Background is how many Background jobs may run at once (0: one); it
	// is capped at Workers.
	Background int
	// FlushQueue and BackgroundQueue bound the queued jobs of those
	// priorities (0: 2*Workers and Background).
	FlushQueue      int
	BackgroundQueue int
	// Batchers maps job keys to the batch backends that run them.
	Batchers map[string]Batcher
}

// Task is what Submit queues.
type Task struct {
	// Key groups jobs that a Batcher can run together (for example the
	// codec and direction).
	Key string
	// Payload is what a Batcher works on: input and room for the result.
	Payload any
	// Run does the work on a CPU worker (jobs of a key without a Batcher);
	// it gets the job's context.
	Run func(ctx context.Context) error
	// Then, if set, is called by the worker once the job has run or failed
	// (not when a queued job is cancelled or dropped at Close), before Done
	// is closed; for results of jobs nobody waits for (read-ahead).
	Then func(err error)
}

// Job is a submitted Task. Its fields are read-only.
type Job struct {
	Task
	// Prio is the job's priority.
	Prio Priority

	ctx  context.Context
	err  error
	done chan struct{}
	elem *list.Element // in its queue while queued; guarded by Scheduler.mu
}

// Context is the context the job was submitted with.
func (j *Job) Context() context.Context { return j.ctx }

// Done is closed when the job has finished (run, failed or cancelled).
func (j *Job) Done() <-chan struct{} { return j.done }

// Err is the job's result; valid once Done is closed.
func (j *Job) Err() error { return j.err }

// Scheduler runs jobs on a pool of workers by priority. It is safe for
// concurrent use.
type Scheduler struct {
	mu       sync.Mutex
	work     *sync.Cond // a job was queued, or closing
	space    *sync.Cond // a bounded queue has room again
	queues   [NumPriorities]*list.List
	limits   [NumPriorities]int // 0: unbounded
	running  [NumPriorities]int
	bgMax    int
	batchers map[string]Batcher
	closed   bool
	wg       sync.WaitGroup
	workers  int
}

// New starts a scheduler and its workers; Close stops them.
func New(o Options) *Scheduler {
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.Background <= 0 {
		o.Background = 1
	}
	o.Background = min(o.Background, o.Workers)
	if o.FlushQueue <= 0 {
		o.FlushQueue = 2 * o.Workers
	}
	if o.BackgroundQueue <= 0 {
		o.BackgroundQueue = o.Background
	}
	s := &Scheduler{bgMax: o.Background, batchers: o.Batchers, workers: o.Workers}
	s.work = sync.NewCond(&s.mu)
	s.space = sync.NewCond(&s.mu)
	for p := range s.queues {
		s.queues[p] = list.New()
	}
	s.limits[Flush] = o.FlushQueue
	s.limits[Background] = o.BackgroundQueue
	for range o.Workers {
		s.wg.Add(1)
		go s.worker()
	}
	return s
}

// Workers is the number of workers.
func (s *Scheduler) Workers() int { return s.workers }

// Submit queues t at priority p and returns its job; it waits while p's
// queue is full (back-pressure) and fails if ctx ends first or the scheduler
// is closed. A job whose ctx has ended before it starts is not run and fails
// with ctx's error.
func (s *Scheduler) Submit(ctx context.Context, p Priority, t Task) (*Job, error) {
	if p < 0 || p >= NumPriorities {
		return nil, fmt.Errorf("sched: bad priority %d", p)
	}
	j := &Job{Task: t, Prio: p, ctx: ctx, done: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	if lim := s.limits[p]; lim > 0 && s.queues[p].Len() >= lim && !s.closed {
		// Wake this waiter when ctx ends, too.
		stop := context.AfterFunc(ctx, func() {
			s.mu.Lock()
			s.space.Broadcast()
			s.mu.Unlock()
		})
		for s.queues[p].Len() >= lim && !s.closed && ctx.Err() == nil {
			s.space.Wait()
		}
		stop()
	}
	if s.closed {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	j.elem = s.queues[p].PushBack(j)
	s.work.Signal()
	return j, nil
}

// Do runs fn at priority p and waits for it (see Submit and Wait).
func (s *Scheduler) Do(ctx context.Context, p Priority, key string, fn func(ctx context.Context) error) error {
	j, err := s.Submit(ctx, p, Task{Key: key, Run: fn})
	if err != nil {
		return err
	}
	return s.Wait(ctx, j)
}

// Wait waits for j. If ctx ends while j is still queued, j is removed and
// Wait returns ctx's error; a running job is waited for (its own context
// tells it to stop).
func (s *Scheduler) Wait(ctx context.Context, j *Job) error {
	select {
	case <-j.done:
		return j.err
	case <-ctx.Done():
	}
	if s.cancel(j, ctx.Err()) {
		return j.err
	}
	<-j.done
	return j.err
}

// cancel removes j from its queue if it is still there and finishes it with
// err; it reports whether it did.
func (s *Scheduler) cancel(j *Job, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.elem == nil {
		return false
	}
	s.queues[j.Prio].Remove(j.elem)
	j.elem = nil
	j.err = err
	close(j.done)
	s.space.Broadcast()
	return true
}

// Depth returns how many jobs of each priority are queued and running.
func (s *Scheduler) Depth() (queued, running [NumPriorities]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.queues {
		queued[p] = s.queues[p].Len()
	}
	return queued, s.running
}

// Close stops the workers once the running jobs are done; jobs still queued
// fail with ErrClosed, and later Submits too.
func (s *Scheduler) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return
	}
	s.closed = true
	for p := range s.queues {
		for e := s.queues[p].Front(); e != nil; e = e.Next() {
			j := e.Value.(*Job)
			j.elem = nil
			j.err = ErrClosed
			close(j.done)
		}
		s.queues[p].Init()
	}
	s.work.Broadcast()
	s.space.Broadcast()
	s.mu.Unlock()
	s.wg.Wait()
}

// next takes the jobs a free worker runs next, or nil when closed. The
// caller holds s.mu.
func (s *Scheduler) next() []*Job {
	for {
		if s.closed {
			return nil
		}
		for p := Priority(0); p < NumPriorities; p++ {
			q := s.queues[p]
			if q.Len() == 0 {
				continue
			}
			if p == Background && s.running[Background] >= s.bgMax {
				break
			}
			first := q.Front().Value.(*Job)
			batch := []*Job{first}
			if b := s.batchers[first.Key]; b != nil {
				for e := q.Front().Next(); e != nil && len(batch) < b.MaxBatch(); e = e.Next() {
					if j := e.Value.(*Job); j.Key == first.Key {
						batch = append(batch, j)
					}
				}
			}
			for _, j := range batch {
				q.Remove(j.elem)
				j.elem = nil
			}
			s.running[p] += len(batch)
			if s.limits[p] > 0 {
				s.space.Broadcast()
			}
			return batch
		}
		s.work.Wait()
	}
}

func (s *Scheduler) worker() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		batch := s.next()
		s.mu.Unlock()
		if batch == nil {
			return
		}
		s.run(batch)
		s.mu.Lock()
		s.running[batch[0].Prio] -= len(batch)
		if batch[0].Prio == Background {
			s.work.Signal() // a background slot is free again
		}
		s.mu.Unlock()
	}
}

// run runs a batch and finishes its jobs.
func (s *Scheduler) run(batch []*Job) {
	live := batch[:0:0]
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			finish(j, err)
			continue
		}
		live = append(live, j)
	}
	if len(live) == 0 {
		return
	}
	if b := s.batchers[live[0].Key]; b != nil {
		errs := runBatch(b, live)
		for i, j := range live {
			finish(j, errs[i])
		}
		return
	}
	for _, j := range live {
		finish(j, runOne(j))
	}
}

// finish records a job's result, calls its Then and wakes its waiters.
func finish(j *Job, err error) {
	j.err = err
	if j.Then != nil {
		func() {
			defer func() { _ = recover() }() // a panicking callback must not kill the worker
			j.Then(err)
		}()
	}
	close(j.done)
}

// runOne runs a job, turning a panic into its error so that one bad block
// cannot take the daemon down.
func runOne(j *Job) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("coding job %q panicked: %v", j.Key, r)
		}
	}()
	if j.Run == nil {
		return fmt.Errorf("job %q has no function and no batcher runs its key", j.Key)
	}
	return j.Run(j.ctx)
}

func runBatch(b Batcher, jobs []*Job) (errs []error) {
	defer func() {
		if r := recover(); r != nil {
			errs = make([]error, len(jobs))
			for i := range errs {
				errs[i] = fmt.Errorf("batch of %q panicked: %v", jobs[0].Key, r)
			}
		}
	}()
	errs = b.RunBatch(jobs[0].ctx, jobs)
	if len(errs) != len(jobs) {
		bad := fmt.Errorf("batcher of %q returned %d results for %d jobs", jobs[0].Key, len(errs), len(jobs))
		errs = make([]error, len(jobs))
		for i := range errs {
			errs[i] = bad
		}
	}
	return errs
}
