package federation

// Pulled is one ticket listed in a feed, verified.
type Pulled struct {
	// Name is its Ticket's name here (TicketName).
	Name string
	// SliceID identifies its slice.
	SliceID string
	// IssuedAt is its iat.
	IssuedAt int64
}

// Held is a Ticket this install made from a feed earlier.
type Held struct {
	Name, SliceID string
	// Redeemed says whether it is the ticket in force (Ready=True).
	Redeemed bool
}

// PullPlan says how the pulled Tickets follow a feed.
type PullPlan struct {
	// Create lists the feed's tickets that have no Ticket yet.
	Create []Pulled
	// Delete lists Tickets to delete: those of slices the feed no longer
	// lists (their slices go), and older tickets of slices whose newer one
	// is redeemed (their slices stay, granted by the newer).
	Delete []string
}

// PlanPull compares a feed with the Tickets pulled before. An older Ticket
// of a listed slice stays until the feed's newer one is redeemed, so that
// a renewal never leaves the slice without a ticket, and a refused renewal
// leaves the running slice alone.
func PlanPull(feed []Pulled, held []Held) PullPlan {
	var plan PullPlan
	current := make(map[string]string, len(feed)) // slice id -> name
	for _, p := range feed {
		current[p.SliceID] = p.Name
	}
	have := make(map[string]Held, len(held))
	for _, h := range held {
		have[h.Name] = h
	}
	for _, p := range feed {
		if _, ok := have[p.Name]; !ok {
			plan.Create = append(plan.Create, p)
		}
	}
	for _, h := range held {
		name, listed := current[h.SliceID]
		switch {
		case !listed:
			plan.Delete = append(plan.Delete, h.Name)
		case name != h.Name && have[name].Redeemed:
			plan.Delete = append(plan.Delete, h.Name)
		}
	}
	return plan
}
