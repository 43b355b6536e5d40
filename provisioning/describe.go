package provisioning

import "fmt"

// Rule is one community rule in words, for the LAN page and `hypha
// community show`.
type Rule struct {
	Name        string `json:"name"`
	Value       string `json:"value"`
	Description string `json:"description,omitempty"`
}

// Rules lists m's rules in a stable order.
func (m *Manifest) Rules() []Rule {
	c := m.Credit
	return []Rule{
		{"credit unit", c.Unit, "the unit of the mutual-credit ledger"},
		{"debt limit", fmt.Sprintf("%d %s", c.DebtLimit, c.Unit), "lowest balance an account may reach"},
		{"credit limit", fmt.Sprintf("%d %s", c.CreditLimit, c.Unit), "highest balance an account may reach"},
		{"commons share", fmt.Sprintf("%.1f%% to %s", c.CommonsShare*100, c.CommonsAccount), "part of every payment that goes to the commons account"},
		{"prompt price", fmt.Sprintf("%d %s / million tokens", c.Pricing.PromptPerMTok, c.Unit), ""},
		{"completion price", fmt.Sprintf("%d %s / million tokens", c.Pricing.CompletionPerMTok, c.Unit), ""},
		{"solar discount", fmt.Sprintf("%.0f%%", c.Pricing.SolarDiscount*100), "price reduction while the serving node runs on surplus renewable power"},
		{"manifest updates", fmt.Sprintf("%d of %d stewards", m.StewardThreshold, len(m.Stewards)), "signatures a change of these rules needs"},
		{"verification", fmt.Sprintf("committee of %d, %.1f%% challenges", m.Verifiers.CommitteeSize, m.Verifiers.ChallengeRate*100), "how served outputs are checked"},
		{"anonymous requests", fmt.Sprintf("%d cloves, any %d rebuild, %d-hop paths", m.Clove.N, m.Clove.K, m.Clove.L), ""},
		{"reputation", fmt.Sprintf("start %.2f, serve above %.2f, decay %.2f/day", m.Reputation.Initial, m.Reputation.Threshold, m.Reputation.DecayPerDay), ""},
	}
}
