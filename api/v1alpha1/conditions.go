package v1alpha1

// Condition types of PlanetKube's kinds. Every kind has Ready, with
// observedGeneration, so that kstatus (Flux, Argo CD, kubectl wait) reads its
// health.
const (
	// ConditionReady is True when the object is fully reconciled and serving.
	ConditionReady = "Ready"
	// ConditionExpired is True when a Slice, binding or Ticket passed its end time.
	ConditionExpired = "Expired"
	// ConditionSuspended is True when a Slice is suspended.
	ConditionSuspended = "Suspended"
	// ConditionBound is True while a ResourcePool's binding gives its
	// amounts to a slice.
	ConditionBound = "Bound"
	// ConditionOvercommitted is True when a ResourcePool does not fit on
	// some of its nodes (it holds nothing there).
	ConditionOvercommitted = "Overcommitted"
	// ConditionReconciling is True while an object converges by itself
	// (kstatus: InProgress); it is absent otherwise.
	ConditionReconciling = "Reconciling"
	// ConditionFeedSynced is True when an Authority's feed was read and
	// applied at the last poll.
	ConditionFeedSynced = "FeedSynced"
	// ConditionPushReady is True when an Authority's cluster is reachable
	// with its push kubeconfig.
	ConditionPushReady = "PushReady"
	// ConditionStalled is True when an object cannot progress until
	// someone changes something (kstatus: Failed); it is absent otherwise.
	ConditionStalled = "Stalled"
	// ConditionExpiresSoon is True when a Slice is in its last week
	// (reason LastWeek) or last day (LastDay) before its expiry; False
	// otherwise (NotExpiringSoon, or Expired, Suspended: nothing runs that
	// the expiry would stop). It is a notice only: kstatus, Flux and the
	// chart's Argo CD health script do not read it, and Ready is unchanged.
	ConditionExpiresSoon = "ExpiresSoon"
)

// Reasons shared by several kinds.
const (
	ReasonReconciled        = "Reconciled"
	ReasonSiteDisabled      = "SiteDisabled"
	ReasonNamespaceConflict = "NamespaceConflict"
)

// Reasons of a Slice's conditions.
const (
	ReasonSliversReady    = "SliversReady"
	ReasonSliversPending  = "SliversPending"
	ReasonNoMatchingNodes = "NoMatchingNodes"
	// ReasonNoReadyNodes: nodes match the slice's selection, but none is
	// ready; it clears by itself when one is.
	ReasonNoReadyNodes   = "NoReadyNodes"
	ReasonSiteNotFound   = "SiteNotFound"
	ReasonSiteSliceLimit = "SiteSliceLimit"
	ReasonInvalidExpiry  = "InvalidExpiry"
	ReasonExpired        = "Expired"
	ReasonNotExpired     = "NotExpired"
	ReasonSuspended      = "Suspended"
	ReasonActive         = "Active"
	// ReasonLastWeek and ReasonLastDay: the slice expires within a week, a
	// day (ExpiresSoon=True); also the Warning events that say so once,
	// when the slice enters that stage. ReasonNotExpiringSoon: more than a
	// week is left.
	ReasonLastWeek        = "LastWeek"
	ReasonLastDay         = "LastDay"
	ReasonNotExpiringSoon = "NotExpiringSoon"
	// ReasonSiteLookupFailed, ReasonNamespaceFailed, ReasonAccessFailed
	// and ReasonSliversFailed say which step of a reconcile failed; the
	// message carries the error, and the reconcile is retried.
	ReasonSiteLookupFailed = "SiteLookupFailed"
	ReasonNamespaceFailed  = "NamespaceFailed"
	ReasonAccessFailed     = "AccessFailed"
	ReasonSliversFailed    = "SliversFailed"
	// ReasonNotAForeignSlice: a Slice in an authority's namespace whose
	// full name (annotation planetkube.io/slice-full-name) is missing or not
	// of that authority. Only the Ticket controller makes such Slices.
	ReasonNotAForeignSlice = "NotAForeignSlice"
	// ReasonNamespaceTerminating: the slice namespace is being deleted (by
	// hand); it is made again once it is gone.
	ReasonNamespaceTerminating = "NamespaceTerminating"
)

// Reasons of Slice events.
const (
	// ReasonSliversCreated and ReasonSliversDeleted: a new generation's
	// slivers were made or deleted (the slice created, suspended or
	// resumed, its template or selection changed); slivers made or deleted
	// as nodes join and leave, or in place of lost ones, are not told by
	// an event (the status and the manager's log show them).
	ReasonSliversCreated = "SliversCreated"
	ReasonSliversDeleted = "SliversDeleted"
	// ReasonSliverFailed: a sliver failed (the kubelet rejected it, say
	// OutOfcpu); it is replaced after a per-node back-off.
	ReasonSliverFailed = "SliverFailed"
)

// Reasons of a sliver issue (SliceStatus.NotReady), besides the node's and
// the pod's own (NodeNotReady, ContainerCreating, ErrImagePull ...).
const (
	SliverIssueNotCreated = "SliverNotCreated"
	SliverIssueReplacing  = "SliverReplacing"
	// SliverIssueBackOff: the node's sliver failed and the next one waits
	// for the back-off to pass.
	SliverIssueBackOff = "SliverBackOff"
	// SliverIssueNodeFull: the node takes no more pods.
	SliverIssueNodeFull = "NodeFull"
)

// Reasons of a ResourcePool's conditions.
const (
	// ReasonPoolAccounting: the pool is not accounted yet.
	ReasonPoolAccounting = "Accounting"
	ReasonPoolAccepted   = "Accepted"
	ReasonPoolInvalid    = "Invalid"
	ReasonOvercommitted  = "Overcommitted"
	ReasonNodesMissing   = "NodesMissing"
	ReasonFits           = "Fits"
	ReasonBindingActive  = "BindingActive"
	ReasonNotBound       = "NotBound"
	ReasonBindingExpired = "BindingExpired"
)

// Reasons of a Ticket's Ready condition besides the refusals (which are
// internal/ticket's Reasons: Malformed, BadSignature ...).
const (
	// ReasonRedeemed: the grant is in force.
	ReasonRedeemed = "Redeemed"
	// ReasonSuperseded: the slice already runs a newer ticket.
	ReasonSuperseded = "Superseded"
	// ReasonWithdrawn: a withdrawal is redeemed: the slice it names is
	// gone, and its older tickets are revoked (Ready=True: done). Also the
	// event of a foreign slice deleted by its issuer's withdrawal.
	ReasonWithdrawn = "Withdrawn"
	// ReasonRedeemFailed: writing what the ticket grants failed; retried.
	ReasonRedeemFailed = "RedeemFailed"
)

// Reasons of an Authority's Ready condition.
const (
	// ReasonKeysValid: at least one of its keys verifies tickets.
	ReasonKeysValid = "KeysValid"
	// ReasonNoValidKeys: none of its keys is usable.
	ReasonNoValidKeys = "NoValidKeys"
	// ReasonKeysCorrected (an event): keys added by hand to the install's
	// own Authority were removed; it lists only its key Secret's.
	ReasonKeysCorrected = "KeysCorrected"
)

// Reasons of an Authority's FeedSynced and PushReady conditions (a refused
// feed's reason is internal/federation/feed's: Malformed, Oversized ...).
const (
	ReasonFeedSynced = "FeedSynced"
	// ReasonFeedUnreachable: the feed did not answer (network, timeout,
	// server error); foreign slices keep running until their tickets expire.
	ReasonFeedUnreachable = "FeedUnreachable"
	ReasonPeerReachable   = "PeerReachable"
	// ReasonPeerUnreachable: the push kubeconfig's API server did not answer
	// or refused the manager.
	ReasonPeerUnreachable = "PeerUnreachable"
	// ReasonInvalidKubeconfig: the push Secret is missing or its kubeconfig
	// is refused (exec plugin, file path, plain HTTP ...).
	ReasonInvalidKubeconfig = "InvalidKubeconfig"
	// ReasonInvalidFeedConfig: the Authority's feedCABundle holds no
	// certificate, or its feed URL cannot be used.
	ReasonInvalidFeedConfig = "InvalidFeedConfig"
	// ReasonNoKey: this install's key cannot be read to sign requests.
	ReasonNoKey = "NoKey"
)

// Reasons of a slice's federation entries.
const (
	// ReasonUnknownAuthority: the slice names an authority with no Authority here.
	ReasonUnknownAuthority = "UnknownAuthority"
)
