// Package durable writes files so that a crash leaves either the old
// content or the new, never a torn one, and the new content survives a
// power cut once the call returns.
package durable

import (
	"os"
	"path/filepath"
	"strings"
)

// WriteFile writes b to path atomically and durably: a temporary file in
// the same folder, fsync, chmod perm, rename over path, fsync of the folder.
// On failure the temporary file is removed and path is left as it was.
func WriteFile(path string, b []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a folder, making the names created or renamed in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// IsTemp says whether a file name is one of WriteFile's temporary files (a
// crash can leave one; whoever owns the folder may remove it).
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp")
}
