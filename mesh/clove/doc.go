// Package clove sends requests anonymously across the mesh as S-IDA
// "cloves" over onion paths, after PlanetServe (NSDI '26) with the
// prototype's weaknesses fixed.
//
// A request is sealed under a fresh key (XChaCha20-Poly1305), its ciphertext
// cut into N Reed-Solomon shards of which any K rebuild it, and the key split
// with Shamir (K, N): one clove per shard. Each clove travels over its own
// path of L relays, wrapped in one onion layer per hop plus one for the
// serving node (Sphinx-like: per-hop X25519, HKDF, AEAD over the whole
// packet, re-encryption at every hop, fixed-size packets). A relay learns
// only its predecessor and successor; the serving node learns the request but
// not who sent it; no relay ever sees a clove in clear. The serving node acks
// each clove, rebuilds the request from the first K, calls its Handler once,
// and sends the reply back as cloves over the same paths; relays keep the
// reply state until the packet's deadline.
//
// Wiring: derive the onion key with NewIdentity from the libp2p identity,
// publish Identity.Candidate through the membership view, start a Node on
// the host (WithHandler on nodes that serve), and call Node.Request.
package clove
