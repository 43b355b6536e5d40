// Package verify is Hypha's verification committee: it catches serving
// nodes that answer with another model than the one they claim, and turns
// the committee's findings into a reputation the router trusts.
//
// The method follows PlanetServe (NSDI '26) with one change in cost:
//
//  1. Each epoch every committee verifier sends each serving node a few
//     challenge prompts (Pool, Challenge) that look like the community's own
//     traffic, as ordinary greedy chat requests.
//  2. It scores every answer teacher-forced under the same model on its own
//     engine (Scorer, inferd's POST /hypha/score): one forward pass per
//     answer, where PlanetServe makes one request per answer token. The
//     credit of an answer is exp(mean log p(token) − mean log p(best token))
//     (Score.Credit): 1 when every token is the reference model's greedy
//     choice, as an honest node's greedy answer is, and small when another
//     model wrote it.
//  3. It signs a Report per node and epoch (libp2p ed25519 keys) and gossips
//     it; every node adds the reports it hears to its Book.
//  4. The Book computes, identically on every node, each node's reputation:
//     per epoch the median credit across verifiers (so a minority of lying
//     verifiers cannot move it), then PlanetServe's update R(T) = α·R(T−1) +
//     β·C(T), with β shrunk when too many recent epochs were abnormal, so
//     reputation falls faster than it rises. The router skips nodes whose
//     reputation is below the threshold (Book implements route.Reputation).
//
// Verifier ties the steps together for one node and epoch; the caller
// (hyphad) supplies the transport (Sender) and the schedule.
package verify
