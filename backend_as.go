package main

// backendAs returns the backend as a T (an optional interface: the
// console's store, the changes feed) when it implements it, and the nil T
// otherwise: whichever backend is opened serves what it can, and the parts
// that take a T handle a nil one.
func backendAs[T any](b any) T {
	t, _ := b.(T)
	return t
}
