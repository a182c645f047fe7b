//go:build !unix

package disk

// On systems without flock(2) a zone folder is not locked against other
// processes.
type folderLock struct{}

func lockFolder(string) (*folderLock, error) { return &folderLock{}, nil }

func (*folderLock) held(string) bool { return true }

func (*folderLock) release() {}

func writable(string) error { return nil }
