// Package image keeps container images on disk for rabbitc: it parses image
// references, pulls from registries (and imports OCI layouts, OCI archives
// and docker save archives), and stores what it fetched by digest.
//
// The store under its root directory looks like this:
//
//	blobs/sha256/<hex>          compressed layer blobs, verified before they appear
//	layers/sha256/<diffID hex>/  unpacked layers, made by the caller (see TempDir, CommitLayer)
//	images/sha256/<hex>/        one directory per image manifest: manifest.json, config.json
//	tags.json                   reference -> manifest digest
//	locks/                      flock files: one for the metadata, one for garbage collection, one per digest
//	tmp/                        partial downloads and temporary files
//
// Everything becomes visible by rename only once complete, so a reader never
// sees half a blob, half a layer or half a tags.json, and a process killed
// with SIGKILL leaves only temporary names behind: a partial download is
// resumed by the next pull of the same digest, other temporary files carry
// their owner's pid and start time and are removed once that process is gone.
//
// The package does not unpack layers: tar streams are untrusted and are
// extracted by the caller inside a user namespace. It does not know about
// containers either, so it cannot tell whether a layer it reports as unused is
// still mounted by a running container; the caller checks that.
package image
