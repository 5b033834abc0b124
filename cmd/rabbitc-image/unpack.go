package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rabbitc/rabbitc/unpack"
	"github.com/rabbitc/rabbitc/userns"
)

// unpackRequest asks the unpack stage to unpack layer blobs (inherited
// from fd 4 on, in order) into directories.
type unpackRequest struct {
	Dirs    []string // one empty directory a layer
	DiffIDs []string // the uncompressed tar's digest each layer must have
	MaxUID  int
	MaxGID  int
}

type unpackReply struct {
	Notes []string
}

// unpackLayers unpacks each blob into its directory, in one stage, and
// checks each layer's diffID.
func unpackLayers(blobs []*os.File, dirs, diffIDs []string) ([]string, error) {
	cfg := userns.CurrentConfig()
	uids, gids := 65536, 65536
	if m, err := userns.SubIDCount(cfg); err == nil {
		uids, gids = m.UIDs, m.GIDs
	}
	var reply unpackReply
	err := userns.RunMapped("/proc/self/exe", "unpack", unpackRequest{Dirs: dirs, DiffIDs: diffIDs, MaxUID: uids - 1, MaxGID: gids - 1}, &reply, blobs...)
	return reply.Notes, err
}

// unpackMain is the unpack stage: root of a user namespace with the
// containers' mappings; the host's mount namespace (the store's paths).
func unpackMain(ch *userns.Channel) int {
	var req unpackRequest
	if err := ch.WaitSpec(&req); err != nil {
		return 125
	}
	var reply unpackReply
	for i, dir := range req.Dirs {
		blob := os.NewFile(uintptr(userns.SyncFD+1+i), "layer")
		err := unpackOne(blob, dir, req.DiffIDs[i], req, &reply)
		blob.Close()
		if err != nil {
			ch.SendError("unpack", err, 0)
			return 125
		}
	}
	if err := ch.SendSpec(reply); err != nil {
		return 125
	}
	return 0
}

func unpackOne(blob *os.File, dir, diffID string, req unpackRequest, reply *unpackReply) error {
	r, err := unpack.Decompress(blob)
	if err != nil {
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer r.Close()
	o := unpack.Options{MaxUID: req.MaxUID, MaxGID: req.MaxGID, Notef: func(format string, args ...any) {
		reply.Notes = append(reply.Notes, fmt.Sprintf(format, args...))
	}}
	h := sha256.New()
	if _, err := unpack.Layer(dir, io.TeeReader(r, h), o); err != nil {
		var ide *unpack.IDError
		if errors.As(err, &ide) {
			return fmt.Errorf("the image's file %s is owned by uid %d gid %d, beyond the %d ids your /etc/subuid and /etc/subgid ranges map (give your user 65536 ids: %s)",
				ide.Name, ide.UID, ide.GID, req.MaxUID+1, subidHint())
		}
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	// Layer read the stream to its end: the hash covers all of it.
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		return fmt.Errorf("layer %s: its content has digest %s (a corrupt layer: pull the image again with --pull always)", diffID, got)
	}
	return nil
}

func subidHint() string {
	cfg := userns.CurrentConfig()
	name := cfg.Username
	if name == "" {
		name = fmt.Sprint(cfg.UID)
	}
	return "sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 " + name
}
