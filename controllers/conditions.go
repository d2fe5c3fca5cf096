package controllers

// Reasons of the conditions PlanetKube's controllers set.
const (
	ReasonReconciled        = "Reconciled"
	ReasonSiteDisabled      = "SiteDisabled"
	ReasonNamespaceConflict = "NamespaceConflict"

	ReasonSliversReady    = "SliversReady"
	ReasonSliversPending  = "SliversPending"
	ReasonNoMatchingNodes = "NoMatchingNodes"
	ReasonSiteNotFound    = "SiteNotFound"
	ReasonSiteSliceLimit  = "SiteSliceLimit"
	ReasonInvalidExpiry   = "InvalidExpiry"
	ReasonExpired         = "Expired"
	ReasonNotExpired      = "NotExpired"
	ReasonSuspended       = "Suspended"
	ReasonActive          = "Active"
	ReasonSliversCreated  = "SliversCreated"
	ReasonSliversDeleted  = "SliversDeleted"
)
