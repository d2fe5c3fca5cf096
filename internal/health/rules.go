package health

import (
	planetv1 "github.com/planetkube/planetkube/api/v1alpha1"
	"github.com/planetkube/planetkube/internal/ticket"
)

// SliceRules: a slice whose slivers are starting, or whose reconcile failed
// at a step that is retried, is InProgress; one that no retry can fix (its
// expiry, its site, its node selection, its name) is Failed until someone
// changes it. A suspended slice is Ready, as its owner asked.
var SliceRules = Rules{
	planetv1.ReasonInvalidExpiry:        Failed,
	planetv1.ReasonExpired:              Failed,
	planetv1.ReasonSiteNotFound:         Failed,
	planetv1.ReasonSiteDisabled:         Failed,
	planetv1.ReasonSiteSliceLimit:       Failed,
	planetv1.ReasonNoMatchingNodes:      Failed,
	planetv1.ReasonNamespaceConflict:    Failed,
	planetv1.ReasonNotAForeignSlice:     Failed,
	planetv1.ReasonSliversPending:       InProgress,
	planetv1.ReasonNoReadyNodes:         InProgress,
	planetv1.ReasonNamespaceTerminating: InProgress,
}

// PoolRules: a pool not accounted yet is InProgress; an invalid pool, or
// one that holds nothing on some nodes (overcommitted, or nodes gone), is
// Failed until its spec or the nodes change.
var PoolRules = Rules{
	planetv1.ReasonPoolAccounting: InProgress,
	planetv1.ReasonPoolInvalid:    Failed,
	planetv1.ReasonOvercommitted:  Failed,
	planetv1.ReasonNodesMissing:   Failed,
}

// SiteRules: a namespace conflict needs someone to rename or remove the
// other party. (A disabled site is Ready, as its owner asked.)
var SiteRules = Rules{
	planetv1.ReasonNamespaceConflict: Failed,
}

// TicketRules: every refusal needs a new ticket or a change of trust, pool
// or spec, except NotYetValid (it becomes valid by itself) and a failed
// write (retried). A superseded ticket never does anything again: it is
// Failed, so that whoever keeps it in Git sees it.
var TicketRules = Rules{
	string(ticket.Malformed):         Failed,
	string(ticket.BadSignature):      Failed,
	string(ticket.UnknownIssuer):     Failed,
	string(ticket.BadDelegation):     Failed,
	string(ticket.OutOfScope):        Failed,
	string(ticket.WrongAudience):     Failed,
	string(ticket.NotYetValid):       InProgress,
	string(ticket.Expired):           Failed,
	string(ticket.InvalidGrant):      Failed,
	string(ticket.Replayed):          Failed,
	string(ticket.NotTrusted):        Failed,
	string(ticket.Overcommitted):     Failed,
	string(ticket.Revoked):           Failed,
	planetv1.ReasonNamespaceConflict: Failed,
	planetv1.ReasonSuperseded:        Failed,
	planetv1.ReasonRedeemFailed:      InProgress,
}

// AuthorityRules: an authority with no usable key verifies no ticket
// until its keys are fixed.
var AuthorityRules = Rules{
	planetv1.ReasonNoValidKeys: Failed,
}
