package pull

// Pulled is one ticket listed in a feed.
type Pulled struct {
	// Name is its Ticket's name here (TicketName).
	Name string
	// SliceID identifies its slice.
	SliceID string
	// Refused says that the ticket did not pass the checks here: it is not
	// applied, and the slice it names (when it could be read) is kept as it
	// is rather than withdrawn.
	Refused bool
}

// Held is a Ticket this install made from a feed earlier.
type Held struct {
	Name, SliceID string
	// Redeemed says whether it is the ticket in force (Ready=True).
	Redeemed bool
}

// Plan says how the pulled Tickets follow a feed.
type Plan struct {
	// Create lists the feed's tickets that have no Ticket yet.
	Create []Pulled
	// Delete lists Tickets to delete: those of slices the feed no longer
	// lists (their slices go), and older tickets of slices whose newer one
	// is redeemed (their slices stay, granted by the newer).
	Delete []string
}

// Compare compares a feed with the Tickets pulled before. An older Ticket
// of a listed slice stays until the feed's newer one is redeemed, so that
// a renewal never leaves the slice without a ticket, and a refused renewal
// leaves the running slice alone. Each ticket counts on its own: one
// refused here is not applied and keeps its slice as it is, and the slices
// the feed no longer lists are withdrawn whatever else it holds.
func Compare(feed []Pulled, held []Held) Plan {
	var plan Plan
	current := make(map[string]string, len(feed)) // slice id -> name
	kept := make(map[string]bool)                 // slice ids of refused tickets
	for _, p := range feed {
		if p.Refused {
			kept[p.SliceID] = true
		} else {
			current[p.SliceID] = p.Name
		}
	}
	have := make(map[string]Held, len(held))
	for _, h := range held {
		have[h.Name] = h
	}
	for _, p := range feed {
		if _, ok := have[p.Name]; !ok && !p.Refused {
			plan.Create = append(plan.Create, p)
		}
	}
	for _, h := range held {
		name, listed := current[h.SliceID]
		switch {
		case !listed && kept[h.SliceID]:
		case !listed:
			plan.Delete = append(plan.Delete, h.Name)
		case name != h.Name && have[name].Redeemed:
			plan.Delete = append(plan.Delete, h.Name)
		}
	}
	return plan
}
